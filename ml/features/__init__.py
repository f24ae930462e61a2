"""Point-in-time fraud features: definitions as data (``definitions/*.yaml``), one SQL builder for
the offline training set (warehouse schema ``features``) and the online store (Mongo ``features``)."""
