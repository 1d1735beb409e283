"""What the API does, apart from how it is asked: the JSON handlers and the dashboard's pages both
parse their input into the same request models and call these, so both answer with the same errors."""
