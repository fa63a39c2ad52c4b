from adegan.cli import main

main()
