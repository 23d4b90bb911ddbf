"""Helpers for tests and benchmarks: real peers (dcmtk, dciodvfy, Orthanc) on free ports."""
