from lab.cli import main_entry

main_entry()
