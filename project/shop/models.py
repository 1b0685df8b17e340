from django.db import models


class Order(models.Model):
    """An order in the example shop; the fulfilment workflow moves it along."""

    class Status(models.TextChoices):
        NEW = "new"
        RESERVED = "reserved"
        PAID = "paid"
        SHIPPED = "shipped"

    customer_email = models.EmailField()
    item = models.CharField(max_length=100)
    quantity = models.PositiveIntegerField(default=1)
    total_cents = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"order {self.pk} ({self.status})"


class Stock(models.Model):
    item = models.CharField(max_length=100, unique=True)
    available = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.item}: {self.available}"


class Shipment(models.Model):
    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="shipment")
    tracking_number = models.CharField(max_length=40, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.tracking_number
