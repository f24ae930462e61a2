SELECT name FROM pg_settings WHERE pending_restart ORDER BY name
