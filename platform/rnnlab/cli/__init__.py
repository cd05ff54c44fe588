"""Face: the command line. Parses arguments, calls one library function, renders the result."""
