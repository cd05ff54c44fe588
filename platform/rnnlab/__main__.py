from rnnlab.cli.app import main

main()
