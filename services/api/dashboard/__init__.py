"""The dashboard: server-rendered pages of campaigns, progress, results and conversations."""
