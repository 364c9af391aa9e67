"""The operators' web console: server-rendered pages under /console."""
