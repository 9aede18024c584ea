"""One module per subcommand: parse and validate arguments, call the library, write outputs."""
