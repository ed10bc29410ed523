"""The transports: the Flask app on waitress (HTTP, NDJSON) and the notebook widget's comm, over one view table."""
