from keel._cli.main import main

main()
