"""Hardware drivers: servo buses (Dynamixel 2.0, Feetech), devices built on them (arms, hands), sensors
(data glove, force/torque, cameras, vision-tactile) and, beside each, a byte-level emulator speaking
the device's real protocol (a pty for serial devices, a socket for network devices).

Importing a device module registers its robot kind with `robot_stack.robot.register_robot`.
"""
