from pulse_proxy.cli import main

main()
