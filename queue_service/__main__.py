from queue_service.cli.main import main

main()
