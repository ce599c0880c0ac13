"""Servo buses: Dynamixel Protocol 2.0 and Feetech SCS/STS behind one `MotorBus`.

- `tables`: control tables as data (XL330, XC330, XM430, STS3215).
- `protocol`: what both protocols share (instructions, requests, the streaming parser);
  `dynamixel`, `feetech`: their framing only.
- `bus`: `MotorBus` and `SerialMotorBus` (pyserial; retries with backoff); `watchdog`: the retry
  policy and the consecutive-failure trip into safe stop.
- `device`, `devices`: `Robot`s on a bus (`so101`, `koch`, `leap_hand`), `calibration`: ticks <-> rad.
- `node`: launchable `ServoRobotNode` / `ServoEmulatorNode`. The emulator is `drivers.servo_emulator`.

Importing `drivers.servo.devices` registers the robot kinds.
"""
