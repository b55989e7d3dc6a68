"""multinetctl: the operator's command line. One module per subcommand."""
