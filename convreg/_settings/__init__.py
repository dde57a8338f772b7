"""Settings: one resolver (argument > context > process > environment > file > default)
for every setting, the config file, the thread count, and the per-call context."""
