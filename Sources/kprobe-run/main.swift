import KprobeRunCLI

KprobeRunCommand.main()
