"""The switch's concepts, each declared once: no SQL, no Kafka, no HTTP."""
