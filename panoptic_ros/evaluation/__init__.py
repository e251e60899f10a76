"""Evaluation: panoptic quality (PQ/SQ/RQ) with the semantics of the official evaluators."""

from panoptic_ros.evaluation.pq import PQAccumulator, SegmentTable, format_pq_table

__all__ = ['PQAccumulator', 'SegmentTable', 'format_pq_table']
