"""paydata: CDC, warehouse, MongoDB and fraud ML for a payment processor."""
