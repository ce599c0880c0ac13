"""The `robot-stack` command: one entry point, one module per subcommand group."""
