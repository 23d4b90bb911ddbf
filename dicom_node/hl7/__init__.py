"""HL7 v2.5.1 to and from the RIS: results (ORU^R01) and order priority updates (OMG^O19,
ORM^O01) made from a study's result facts, sent over MLLP; "read" updates received."""
