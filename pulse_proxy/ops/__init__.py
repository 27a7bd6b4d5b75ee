"""Operating the proxy: the command line, the report, the demo, fleet exports, the healthcheck."""
