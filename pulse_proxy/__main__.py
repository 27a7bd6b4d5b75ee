from pulse_proxy.ops.cli import main

main()
