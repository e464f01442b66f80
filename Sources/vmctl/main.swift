import VMCtlCommands

await VMCtl.main()
