"""The TactAR-style web AR page: a browser sends controller pose and buttons, draws force/tactile arrows.

`teleop.web.node:ARPageNode` is the launchable node; `server`, `protocol`, `mapping` and
`feedback` are its parts; `headless` drives a headless Chromium for tests and benchmarks.
"""
