from mapsvc.cli import main

main()
