"""edgepbx appliance: everything that runs on the office box."""
