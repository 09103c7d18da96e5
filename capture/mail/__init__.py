"""Email: sequence files, timing, enrolment, the sending engine, composing messages, MIME, backends and the outbox."""
