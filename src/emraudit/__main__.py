from emraudit.cli import main

main()
