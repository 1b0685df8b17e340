"""The REST API (Django REST Framework): serializers, views, event-key authentication."""
