from kcode.cli import main

main()
