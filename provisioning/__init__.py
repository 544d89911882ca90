"""Phone auto-provisioning: device registry, vendor detection, config rendering, TFTP/HTTP serving."""
