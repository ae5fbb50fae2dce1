"""Training with Lightning: the task, resume, the monitors and what a run does."""
