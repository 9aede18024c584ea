"""One module per subcommand, each with one ``run(...)``: load the inputs, compute through the
kernels, write the outputs and the log. What a script or notebook calls without the CLI."""
