"""Running the assistant: training, the two servers as child processes, the local cluster, the command line.

It drives Rasa through its command line only; `python -m bot` is its entry point."""
