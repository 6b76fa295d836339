"""The course: exercises (catalog), their break and solution steps (steps), the student's
progress (progress), and the commands over them (runner; the CLI in lab.course.cli)."""
