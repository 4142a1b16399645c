"""Reference system 3: animal-photo uploads with asynchronous face screening, human review and retraining."""
