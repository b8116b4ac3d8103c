"""`python worker.py` runs one Taskline worker (see tasks/worker/)."""

from tasks.worker.main import main

if __name__ == "__main__":
    main()
