"""Data contracts at ingestion (Great Expectations), quarantine and schema drift."""
