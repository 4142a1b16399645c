"""Reference systems. They import only loopml's public API, exactly as a customer project would."""
