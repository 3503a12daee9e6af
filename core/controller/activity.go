package controller

// Activity is a number that grows whenever the run makes progress: a task
// finishes or a subtask reports more records. Finishing uses it to tell a
// pipeline that drains slowly from one that is stuck.
func (c *JobController) Activity() uint64 {
	n := uint64(c.finished)
	for i := range c.perTask {
		n += c.perTask[i].recordsIn + c.perTask[i].recordsOut
	}
	return n
}
