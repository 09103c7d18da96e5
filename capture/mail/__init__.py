"""Email: sequence files, enrolment, timing, the sending engine, composing, backends, outbox."""
