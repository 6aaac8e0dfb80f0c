"""nowcastd: a streaming radar nowcasting service built on PredRNN-v2."""

__version__ = "0.1.0"
