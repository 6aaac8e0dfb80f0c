from nowcastd.cli.app import main

main()
