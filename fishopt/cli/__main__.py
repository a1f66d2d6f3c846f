from fishopt.cli import main

main()
