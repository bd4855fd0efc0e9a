from bench.realdata.run import main

main()
