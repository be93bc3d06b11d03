"""The seed architecture of sysdesign_kit, assembled as a running system."""
