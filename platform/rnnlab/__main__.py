from rnnlab.cli.entry import main

main()
