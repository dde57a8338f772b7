"""The front end: every argument validated once, into a frozen spec the backends trust."""
