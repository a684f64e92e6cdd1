"""What a process needs to run anywhere, below training, evaluation and the prior alike:
devices and precision, the process group, stop signals, CPU threads."""
