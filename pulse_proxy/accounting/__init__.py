"""After the last byte: tokens, usage, cost, risk and the event, in a child process."""
